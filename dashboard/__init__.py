"""sacred-board, the web app for runs recorded by sacred-gpu: ``sacred-board -m host:port:db`` (``dashboard.cli``),
``dashboard.app.create_app(Board(store))`` to embed it, ``dashboard.wsgi:server`` for gunicorn.

Every read and edit goes through ``sacred_gpu``'s store, never straight to MongoDB.
"""
