"""``python -m morphseq_stages``: the same command as ``morphseq-stages``."""


from .cli import run

run()
