"""Judging clips yourself: a local web page that serves pending pairs and a gatherer over it."""
