"""Probing an uploaded file, which no one but its uploader vouches for: ``facts`` reads what it is
(container, streams, duration, a thumbnail) with bounded work; ``sandbox`` runs that reading in a
confined child process under CPU, memory and time limits; ``service`` is the probe of a
``processing`` file, which records the facts and moves the file to ``ready`` or ``rejected``."""
