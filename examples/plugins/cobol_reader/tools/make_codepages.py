"""Print the ``_DIFFERENCES`` table of ``dativo_cobol/codepages.py`` from GNU libc's IBM code page charts.

    python examples/plugins/cobol_reader/tools/make_codepages.py

Each EBCDIC code page that Python lacks is written as the code points where it differs from cp037, taken from
``iconv -f IBMnnnn`` (glibc ships IBM's published mapping tables). ``tests/examples/cobol/test_codepages.py``
checks the shipped table against iconv again, so an edit by hand cannot go unnoticed.
"""

from __future__ import annotations

import subprocess

PAGES = ["cp1047", "cp277", "cp278", "cp280", "cp284", "cp285", "cp297",
         "cp1141", "cp1142", "cp1143", "cp1144", "cp1145", "cp1146", "cp1147", "cp1148"]


def iconv_table(page: str) -> str:
    """The 256 characters of ``page`` (``cp1047`` …) as glibc's iconv decodes the bytes 0-255."""
    out = subprocess.run(["iconv", "-f", f"IBM{page.removeprefix('cp')}", "-t", "UTF-16BE"], input=bytes(range(256)),
                         capture_output=True, check=True).stdout
    return out.decode("utf-16-be")


def differences(page: str) -> str:
    """``"5F:005E AD:005B …"``: byte and code point wherever ``page`` differs from cp037."""
    base, table = bytes(range(256)).decode("cp037"), iconv_table(page)
    return " ".join(f"{i:02X}:{ord(c):04X}" for i, c in enumerate(table) if c != base[i])


def main() -> None:
    """Print the table as Python source."""
    print("_DIFFERENCES = {")
    for page in PAGES:
        pairs = differences(page).split()
        lines = [" ".join(pairs[i:i + 12]) for i in range(0, len(pairs), 12)]
        body = "\n".join(f'        "{line} "' for line in lines).rstrip('" ') + '"'
        print(f'    "{page}": (\n{body}\n    ),')
    print("}")


if __name__ == "__main__":
    main()
