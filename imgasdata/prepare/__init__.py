"""Preparing images (the book's chapter 5): deduplicate, clean, turn annotator sheets into labels, split."""
