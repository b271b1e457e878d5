"""Reading: the reading pathway, reads, the worklist and the reading pages.

``pathway`` says who reads a case next, what each reader may see and what happens when a
second reader disagrees (arbitration); ``assessment`` what a read says; ``actions`` records
a read; ``queries`` the worklist, the next case, the reads a user may see and the priors.
"""
