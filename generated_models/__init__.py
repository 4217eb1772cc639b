"""Default home of the model repositories that runs create (see README.md)."""
