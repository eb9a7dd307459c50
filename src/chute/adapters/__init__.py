"""One module per framework; each imports its framework itself, only when it is used."""
