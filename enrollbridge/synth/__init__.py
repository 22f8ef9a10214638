"""Synthetic seasons: realistic agency files for one city, with anomalies and their ground truth."""
