"""Grading the labs: the exercise marks a notebook carries (`marks`) and student copies (`assign`)."""
