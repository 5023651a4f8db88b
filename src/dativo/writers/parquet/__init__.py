"""Built-in ``parquet`` writer: Parquet files, local or on S3, that change one whole run at a time.

Layout of a target (a local folder or an ``s3://bucket/prefix``)::

    out/orders/
      000001-<run id>/part-0-00000.parquet     one folder per committed run
      000001-<run id>/_dativo_commit.json      the run's record: job, rows, files, schema, state
      _dativo/staging/<run id>/                files written but not yet committed
      _dativo/log/00000000000000000001.json    S3 only: the commit log, one object per commit

Readers that list the folder (pyarrow, DuckDB, Spark, pandas) skip names starting with ``_`` or ``.``, so
staged files and Dativo's bookkeeping are invisible to them. :func:`read_committed` reads exactly the
committed files through the same records Dativo itself uses. Locally the commit is one ``rename`` (append)
or one atomic directory exchange (overwrite, of a folder only Dativo wrote), under the target's lock; on S3
it is the PUT of one commit-log object, and the run returns once its files are copied into place. The
layout, the commit protocol and what a listing reader sees meanwhile are the storage block's:
:mod:`dativo.storage.store`, :mod:`dativo.storage.local`, :mod:`dativo.storage.objectstore`.

Modules, each importing only those above it:

- :mod:`.config`: :class:`ParquetWriterConfig`, the writer's options;
- :mod:`.layout`: what a commit record carries besides the files (schema, state);
- :mod:`.read`: :func:`read_committed`;
- :mod:`.writer`: the :class:`ParquetWriter` plugin.
"""

from dativo.storage import MARKER
from dativo.writers.parquet.config import ParquetWriterConfig
from dativo.writers.parquet.read import read_committed
from dativo.writers.parquet.writer import ParquetWriter

__all__ = ["MARKER", "ParquetWriter", "ParquetWriterConfig", "read_committed"]
