"""gdmkit."""
