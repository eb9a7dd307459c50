"""Preprocess ahead: any source (arrays, files, tables, generators, Ray datasets) into the chute format."""
