"""GPU inference: the Modal app and the local CPU engines of every AI feature.

Never imports Django: the Django side reaches this package through one client module
(jobs/gpu_client.py), so the same code runs inside Modal's containers.
"""
