"""EDL documents: undo history and size limits, and the render's pieces."""

from __future__ import annotations

from auteur.settings.environment import env

# ---- EDL documents (projects/edl/): bounded undo history and size limits per document
# Undo steps kept per project, a quota that prunes the oldest rather than refusing a save.
AUTEUR_EDL_HISTORY = env.int("AUTEUR_EDL_HISTORY", default=20)
AUTEUR_EDL_MAX_BYTES = env.int("AUTEUR_EDL_MAX_BYTES", default=2 * 1024 * 1024)
AUTEUR_EDL_MAX_TRACKS = env.int("AUTEUR_EDL_MAX_TRACKS", default=50)
AUTEUR_EDL_MAX_CLIPS = env.int("AUTEUR_EDL_MAX_CLIPS", default=5000)
AUTEUR_EDL_MAX_SEGMENTS = env.int("AUTEUR_EDL_MAX_SEGMENTS", default=20000)
# Why these defaults: projects/edl/documents.py EdlLimits. The render's pieces (clips after the
# transcript's cuts) must not exceed what its engine takes (gpu_tasks/engines/timeline.py).
AUTEUR_EDL_MAX_WORDS = env.int("AUTEUR_EDL_MAX_WORDS", default=50000)
AUTEUR_EDL_MAX_PAUSES = env.int("AUTEUR_EDL_MAX_PAUSES", default=50000)
AUTEUR_RENDER_MAX_PIECES = env.int("AUTEUR_RENDER_MAX_PIECES", default=400)
