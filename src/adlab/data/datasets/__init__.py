"""Registry datasets; each module registers itself in `adlab.data.catalog.CATALOG`."""

from adlab.data.datasets import (
    cdnow,  # noqa: F401
    clothing_reviews,  # noqa: F401
    coil2000,  # noqa: F401
    fashion_mnist,  # noqa: F401
    modeldata,  # noqa: F401
    movielens100k,  # noqa: F401
)
