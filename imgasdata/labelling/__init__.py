"""Labelling well, a chapter beyond the book: which images to hand-label next (:mod:`.suggest`),
which gold labels to doubt (:mod:`.label_issues`), and the share of each class with intervals
that stay valid when the classifier errs (:mod:`.estimate`)."""
