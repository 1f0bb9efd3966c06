"""sacred-board, the web app for runs recorded by sacred-gpu (runs table, run pages, comparison).

Not built yet: the runs table, CLI and demo come with the board's own issue. Every read it makes will go through
``sacred_gpu``'s store, never straight to MongoDB.
"""
