"""Alignment (TokAlign): co-occurrence vectors · relative representations and blockwise top-k · mapping
rules · the target-to-source mapping · the span test."""
