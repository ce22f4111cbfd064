"""The online wing: per click, update -> encode -> retrieve -> rank."""
