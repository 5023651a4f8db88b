"""The ``cobol`` reader's options (the job's ``source.reader.options``), named after Cobrix's where Dativo had none."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from dativo_cobol.codepages import code_page

RecordFormat = Literal["F", "FB", "V", "VB", "VS", "VBS", "D"]
_FORMAT_NAMES = {"fixed": "F", "rdw": "V", "f": "F", "fb": "FB", "v": "V", "vb": "VB", "vs": "VS",
                 "vbs": "VBS", "d": "D", "text": "D"}


class CobolConfig(BaseModel):
    """Options of the ``cobol`` reader (the job's ``source.reader.options``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    path: str | list[str] = Field(description="A data file, a directory, a glob (`in/*.dat`), or a list of them. "
                                  "Relative paths start at the current directory. Gzip files are read as streams.")
    copybook: str = Field(description="The COBOL copybook describing one record.")
    encoding: str = Field("cp037", description="Code page of text and DISPLAY numbers: an EBCDIC page (cp037, "
                          "cp500, cp1047, cp273, cp277 … cp297, cp1140 … cp1148) for mainframe files, or `ascii`, "
                          "`latin-1`, `cp1252`, `utf-8` for files made off the host (ASCII digits and signs).")
    record_format: RecordFormat = Field(
        "F", description="`F`: records of the copybook's length back to back; `FB`: blocks of fixed records, each "
        "block after a 4-byte BDW; `V`: each record after a 4-byte RDW; `VB`: blocks after a BDW holding RDW "
        "records; `VS`, `VBS`: spanned records, whose segments (an RDW with the segment bits in its third "
        "byte) are joined, unblocked or in BDW blocks; `D`: text lines (LF or CRLF). `fixed` and `rdw` are accepted for F and V.")
    is_rdw_big_endian: bool = Field(True, description="RDWs (and a V/VB file's lengths) are big-endian, as the "
                                    "host writes them; false: the 4-byte word is little-endian.")
    is_rdw_part_of_record_length: bool = Field(True, description="The RDW's length counts its own 4 bytes (the "
                                               "IBM rule); false: it is the payload's length.")
    rdw_adjustment: int = Field(0, ge=-1000, le=1000, description="Bytes added to every RDW's (or record length "
                                "field's) length, for writers that count otherwise.")
    is_bdw_big_endian: bool = Field(True, description="BDWs (VB, FB) are big-endian.")
    bdw_adjustment: int = Field(0, ge=-1000, le=1000, description="Bytes added to every BDW's block length.")
    record_length: int | None = Field(None, ge=1, description="F: the record length when it is not the "
                                      "copybook's (longer records: the rest is ignored; shorter: later fields "
                                      "are absent).")
    record_length_field: str | None = Field(None, description="F: the COBOL name of a numeric field inside each "
                                            "record that holds the record's length in bytes.")
    file_start_offset: int = Field(0, ge=0, description="Bytes skipped at the start of every file (a header).")
    file_end_offset: int = Field(0, ge=0, description="Bytes skipped at the end of every file (a footer).")
    trim: bool | Literal["right", "left", "both", "none"] = Field(
        "right", description="Padding dropped from text fields: spaces and low-values (X'00'), on the `right`, "
        "`left`, `both` sides or `none`; a field of low-values only is null unless `none`. true = right.")
    on_invalid_number: Literal["fail", "null", "reject_record"] = Field(
        "fail", validation_alias=AliasChoices("on_invalid_number", "on_error"),
        description="A number whose bytes are not valid: stop the job (`fail`), read it as null and count it "
        "(`null`), or write the raw record to `reject_path` and go on (`reject_record`; `on_error: reject` is "
        "the old spelling).")
    reject_path: str | None = Field(None, description="File receiving rejected records, raw, in the input's "
                                    "record format (replaced by each run). Required with reject_record.")
    batch_rows: int = Field(65_536, ge=1, le=10_000_000, description="Records per Arrow batch.")
    split_mb: float = Field(64.0, gt=0, description="Size of the byte ranges files are read in parallel by "
                            "(at record, line or block boundaries; gzip files are one split).")
    redefines: list[str] = Field(default_factory=list, description="REDEFINES alternatives to read instead of "
                                 "the first layout (the redefined item), by COBOL name.")
    segment_field: str | None = Field(None, description="Multi-segment files: the COBOL name of the field whose "
                                      "value says which segment (REDEFINES alternative) a record holds.")
    redefine_segment_id_map: dict[str, str | list[str]] = Field(
        default_factory=dict, description="Multi-segment files: REDEFINES alternative (COBOL name) → the "
        "segment id value(s) of the records it describes.")
    segment_output: Literal["wide", "per_segment"] = Field(
        "wide", description="`wide`: one dataset, every mapped alternative a column, null where the record is "
        "another segment; `per_segment`: one dataset per alternative (`<dataset>_<alternative>`), of its records.")
    segment_id_levels: list[str | list[str]] = Field(
        default_factory=list, description="Hierarchical files: the segment id value(s) of each level, root first; "
        "adds `seg_id0` … columns naming each record's ancestors (`<prefix><file>_<record>`).")
    segment_id_prefix: str = Field("", description="Prefix of the generated `seg_id` values.")
    variable_size_occurs: bool = Field(False, description="OCCURS … DEPENDING ON tables take only the room of "
                                       "their entries in use (later fields move up); false: the room of the "
                                       "largest count, as the compiler lays it out.")
    floating_point_format: Literal["IBM", "IEEE754"] = Field("IBM", description="How COMP-1/COMP-2 are "
                                                             "stored: IBM hexadecimal floating point or IEEE 754.")
    dataset: str | None = Field(None, description="Name of the dataset (default: the job's name).")

    @field_validator("record_format", mode="before")
    @classmethod
    def _format_name(cls, value: object) -> object:
        return _FORMAT_NAMES.get(value.lower(), value) if isinstance(value, str) else value

    @field_validator("on_invalid_number", mode="before")
    @classmethod
    def _old_spelling(cls, value: object) -> object:
        return "reject_record" if value == "reject" else value

    @field_validator("encoding")
    @classmethod
    def _code_page(cls, value: str) -> str:
        try:
            code_page(value)
        except LookupError:
            raise ValueError(f"unknown encoding '{value}'; use an EBCDIC code page such as cp037 or cp1047, or "
                             "ascii, latin-1, utf-8") from None
        return value

    @model_validator(mode="after")
    def _combinations(self) -> CobolConfig:
        fmt = self.record_format
        if self.on_invalid_number == "reject_record" and not self.reject_path:
            raise ValueError("on_invalid_number is reject_record but no reject_path is set; add reject_path: <file>")
        if fmt == "D" and code_page(self.encoding).family == "ebcdic":
            raise ValueError(f"record_format D (text lines) needs an ASCII-family encoding, not {self.encoding}; "
                             "EBCDIC files have no line ends: use F, V or VB")
        if (self.record_length or self.record_length_field) and fmt != "F":
            raise ValueError(f"record_length and record_length_field apply to record_format F, not {fmt}: the "
                             "other formats carry each record's length themselves")
        if self.record_length and self.record_length_field:
            raise ValueError("set record_length or record_length_field, not both")
        if bool(self.segment_field) != bool(self.redefine_segment_id_map) and not self.segment_id_levels:
            raise ValueError("segment_field and redefine_segment_id_map go together: name the field and map each "
                             "REDEFINES alternative to its segment ids")
        if self.segment_id_levels and not self.segment_field:
            raise ValueError("segment_id_levels needs segment_field (the field holding each record's segment id)")
        if self.segment_output == "per_segment" and not self.redefine_segment_id_map:
            raise ValueError("segment_output per_segment needs redefine_segment_id_map")
        return self

    def segment_ids(self) -> dict[str, list[str]]:
        """``redefine_segment_id_map`` with upper-case names and lists of ids."""
        return {name.upper(): [ids] if isinstance(ids, str) else list(ids)
                for name, ids in self.redefine_segment_id_map.items()}
