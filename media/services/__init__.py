"""Every write of media files and voices, and the storage work that goes with it, by concern.

Import each service from its module (``media.services.uploads``, ``.probing``, ``.downloads``,
``.deletion``, ``.outputs``, ``.captions``, ``.voices``); the shared key and filename rules are
in ``media.services.keys``.
"""
