"""Grading the labs: exercise marks in a notebook (`marks`), student copies (`assign`,
`prepare`), seeded variants (`variant`), running each notebook (`run`), and the class's
grades (`grade`, `report`).

Imports: `experiments` and below; never `cli` or `widgets` (its peer front end).
"""
