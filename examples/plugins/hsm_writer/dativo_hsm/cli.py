"""``dativo-hsm decrypt``: read an ``hsm_encrypted`` target back with the HSM, into a plaintext file.

The PIN is never a command-line argument (other users can read those): it comes from an environment
variable (``--pin-env``, default ``HSM_PIN``) or a file (``--pin-file``). S3 credentials come from
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (or the rest of the AWS default chain).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from dativo.api import S3Settings
from dativo.errors import DativoError

from dativo_hsm.read import read_encrypted


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dativo-hsm", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    decrypt = commands.add_parser("decrypt", help="decrypt the committed rows of a target")
    decrypt.add_argument("path", help="the dataset's folder: a local path or s3://bucket/prefix")
    decrypt.add_argument("--pkcs11-library", default=os.environ.get("PKCS11_LIBRARY",
                         "/usr/lib/softhsm/libsofthsm2.so"), help="PKCS#11 module ($PKCS11_LIBRARY)")
    decrypt.add_argument("--token-label", required=True)
    decrypt.add_argument("--key-label", default="", help="default: the label the files name")
    decrypt.add_argument("--pin-env", default="HSM_PIN", help="environment variable holding the PIN")
    decrypt.add_argument("--pin-file", type=Path, help="file holding the PIN (instead of --pin-env)")
    decrypt.add_argument("--s3-endpoint", help="e.g. http://127.0.0.1:8333")
    decrypt.add_argument("--s3-region", default="us-east-1")
    decrypt.add_argument("--s3-path-style", action="store_true", help="address buckets as endpoint/bucket")
    decrypt.add_argument("-o", "--output", type=Path,
                         help="write .parquet (unencrypted!) or .csv; default: CSV on standard output")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dativo-hsm`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.pin_file is not None:
        pin = args.pin_file.read_text().strip()
    elif args.pin_env in os.environ:
        pin = os.environ[args.pin_env]
    else:
        print(f"dativo-hsm: no PIN: set ${args.pin_env} or pass --pin-file", file=sys.stderr)
        return 2
    s3 = None
    if args.path.startswith("s3://"):
        s3 = S3Settings(endpoint=args.s3_endpoint, region=args.s3_region, path_style=args.s3_path_style,
                        access_key_id=os.environ.get("AWS_ACCESS_KEY_ID"),
                        secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY"))
    try:
        table = read_encrypted(args.path, pkcs11_library=args.pkcs11_library, token_label=args.token_label,
                               key_label=args.key_label, pin=pin, s3=s3)
    except DativoError as exc:
        print(f"dativo-hsm: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"dativo-hsm: {args.path}: {exc}", file=sys.stderr)
        return 1
    if args.output is None:
        pacsv.write_csv(table, sys.stdout.buffer)
    elif args.output.suffix == ".csv":
        pacsv.write_csv(table, str(args.output))
    else:
        pq.write_table(table, str(args.output))
    print(f"dativo-hsm: {table.num_rows} rows decrypted", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
