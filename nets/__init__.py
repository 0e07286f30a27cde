"""Network architectures that both the importers (``scripts/importers``) and the runners need, owned by neither:
SAM 3's two networks at explicit sizes and its tokenizer, torchvision's RAFT constructors, and the file
layout each family is stored in. Imports nothing of this project's other packages."""
