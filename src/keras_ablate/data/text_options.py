"""Options of the text datasets (rotten_tomatoes, imdb, csv, tsv, jsonl): what the YAML may set."""

from __future__ import annotations

import codecs
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator


class TextOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    vocab_size: int = Field(
        20000, ge=3, description="token ids, counting 0 = padding and 1 = out-of-vocabulary"
    )
    max_length: int = Field(
        200, ge=1, description="tokens per example; longer texts keep their first max_length"
    )
    padding: Literal["post", "pre"] = Field(
        "post",
        description="where the zeros go: post = after the text, pre = before it (last token at the end)",
    )
    seed: int = Field(
        0,
        ge=0,
        description="data seed for subsampling and the split: every run of a grid sees the same data",
    )


class TokenizedOptions(TextOptions):
    tokenize: Literal["word", "character"] = Field(
        "word",
        description="word: split on whitespace; character: one token per character (Chinese, Japanese)",
    )
    lowercase: bool = True
    strip_punctuation: bool = Field(
        True, description="drop Unicode punctuation and symbols before splitting"
    )
    val_fraction: float = Field(
        0.2, gt=0.0, lt=1.0, description="stratified, seeded validation share"
    )
    # A held-out test split by default: reports compare arms on it, and anything selected (a
    # learning rate, an epoch, a tuned value) is selected on validation (DESIGN.md).
    test_fraction: float = Field(
        0.2,
        ge=0.0,
        lt=1.0,
        description="stratified, seeded held-out test share, taken first (0: no test split, "
        "and reports compare on validation)",
    )
    n_max: int | None = Field(
        None, ge=4, description="stratified subsample of about this many examples (fast runs)"
    )


class RottenTomatoesOptions(TokenizedOptions):
    max_length: int = Field(64, ge=1, description="the longest review snippet has 53 words")


class FileOptions(TokenizedOptions):
    path: str = Field(
        min_length=1,
        description="the data file; relative paths are read from the working directory",
    )
    text_column: str = "text"
    label_column: str = "label"
    encoding: str = "utf-8"
    val_path: str | None = Field(
        None, description="a validation file in the same format, instead of val_fraction"
    )
    test_path: str | None = Field(
        None,
        description="a test file in the same format, instead of test_fraction; relative paths "
        "are read from the working directory, like path",
    )

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(
                f"unknown encoding '{value}' (for example utf-8, latin-1, cp1252, gb18030)"
            ) from None
        return value

    @model_validator(mode="after")
    def _one_validation_source(self):
        # Normalized options (a RunSpec's) hold every field, val_fraction's default included: only
        # a val_fraction other than the default conflicts with a validation file.
        for path, fraction in (("val_path", "val_fraction"), ("test_path", "test_fraction")):
            default = type(self).model_fields[fraction].default
            if getattr(self, path) is not None and getattr(self, fraction) != default:
                raise ValueError(
                    f"set {fraction} or {path}, not both ({path} replaces the {fraction} split)"
                )
        return self


class CsvOptions(FileOptions):
    delimiter: str = Field(",", min_length=1, max_length=1)


class TsvOptions(FileOptions):
    delimiter: str = Field("\t", min_length=1, max_length=1)


class JsonlOptions(FileOptions):
    pass


class ImdbOptions(TextOptions):
    # The keras.datasets.imdb names (num_words, maxlen) are accepted too; both spellings hash alike.
    vocab_size: int = Field(20000, ge=4, validation_alias=AliasChoices("vocab_size", "num_words"))
    max_length: int = Field(200, ge=1, validation_alias=AliasChoices("max_length", "maxlen"))
    n_train: int | None = Field(
        None, ge=2, description="stratified subsample of the 25000 training reviews"
    )
    # The source's own test reviews are split in two: validation and a held-out test split.
    test_fraction: float = Field(
        0.5,
        ge=0.0,
        lt=1.0,
        description="stratified, seeded share of the 25000 source test reviews held out as the "
        "test split (0: none); validation comes from the rest",
    )
    n_val: int | None = Field(
        None, ge=2, description="stratified subsample of the validation reviews"
    )
    n_test: int | None = Field(
        None, ge=2, description="stratified subsample of the held-out test reviews"
    )
    path: str | None = Field(None, description="imdb.npz elsewhere than the Keras cache")


def format_of(opts: FileOptions) -> str:
    return {CsvOptions: "csv", TsvOptions: "tsv", JsonlOptions: "jsonl"}.get(type(opts), "file")
