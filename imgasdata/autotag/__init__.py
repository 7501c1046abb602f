"""Autotagging (the book's chapter 6): off-the-shelf taggers, and checking them against gold labels."""
