"""Product recommendation: next-item recommenders (SASRec-style, two-tower) ranked over the whole catalogue."""
