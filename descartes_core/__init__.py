"""The science: the TC–nRt circuit and its datasets (and, later, models, training and scoring)."""
