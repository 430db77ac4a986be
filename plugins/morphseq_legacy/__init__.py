"""The legacy embedder: the lab's pythae/"AutoModel" folders, loaded without unpickling."""
