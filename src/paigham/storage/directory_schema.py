"""The user directory's search index: the words of every account that is not deactivated."""

from __future__ import annotations

from sqlalchemy import Column, Index, PrimaryKeyConstraint, SmallInteger, String, Table

from paigham.storage.schema import metadata


def _code_points(length: int) -> String:
    """Text compared byte by byte on both engines (PostgreSQL's default collation would order the
    terms by language rules, and a prefix range over them would not be a prefix)."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


# One row per (word, account, field): the word's fold and '~' + its consonant skeleton are both terms
# (translit.index_terms). A search is a range scan `term >= :p AND term < :p || DEL` on the primary
# key's B-tree per query word, then a ranking of the few thousand rows it returns.
directory_terms = Table(
    "directory_terms",
    metadata,
    Column("term", _code_points(64), nullable=False),
    Column("user_id", String(255), nullable=False),
    Column("field", SmallInteger, nullable=False),  # 0 a name (display name, localpart), 1 a designation
    Column("word", String(64), nullable=False),  # the folded word the term came from (for ranking)
    Column("rank", String(64), nullable=False),  # lower-cased display name: the order among equal scores
    PrimaryKeyConstraint("term", "user_id", "field", "word"),
    # The other words of a query, checked against the candidates of the first; and the rewrite of one account.
    Index("directory_terms_user", "user_id", "term"),
    sqlite_with_rowid=False,
)

# Every ordered pair of words of a name or a designation ('rajes sarma', '~rjs srn'; translit.pair_terms):
# a search of two or more words reads the range of its first two (the first whole, the second as typed).
directory_pairs = Table(
    "directory_pairs",
    metadata,
    Column("term", _code_points(128), nullable=False),
    Column("user_id", String(255), nullable=False),
    PrimaryKeyConstraint("term", "user_id"),
    Index("directory_pairs_user", "user_id"),
    sqlite_with_rowid=False,
)
