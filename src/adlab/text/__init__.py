"""Text utilities of the copywriting family: tokenizers with control tokens, and constrained decoding."""
