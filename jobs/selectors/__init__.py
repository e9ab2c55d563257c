"""Reads of the jobs app: jobs and their events (`jobs`), and what a submission names (`requests`)."""
