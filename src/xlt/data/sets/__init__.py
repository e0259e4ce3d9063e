"""One module per data set: how its files are read into examples with their English side."""
