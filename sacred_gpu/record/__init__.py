"""The write side: from Sacred's events to MongoDB, through a local journal, never losing a record.

- :mod:`.observer` (with :mod:`.run_start`, :mod:`.run_records`, :mod:`.run_end`, :mod:`.guards`):
  ``GpuMongoObserver``, Sacred's events turned into records.
- :mod:`.metric_records`: metric batches as records (Sacred's capped document, decimation, chunks).
- :mod:`.journal` (with :mod:`.journal_frames` and :mod:`.spool`): the write-ahead journal on disk.
- :mod:`.recorder` (with :mod:`.replayer`): a run's journal and its writer thread; replaying journals.
- :mod:`.writer` (with :mod:`.writer_files` and :mod:`.writer_edits`): the only code that writes to MongoDB.
- :mod:`.uploads`, :mod:`.quarantine`, :mod:`.sync`, :mod:`.follow`: files uploaded beside records, what MongoDB
  refused, ``sacred-gpu sync``, and ``sync --follow`` (a folder another machine writes, uploaded as it grows).
- :mod:`.own_lines`, :mod:`.gc_freeze`: our log lines kept out of captured output; short garbage collections.

Importing this package imports none of them (the observer needs Sacred, the journal does not).
"""
