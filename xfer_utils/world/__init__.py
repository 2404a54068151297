"""The offline world (docs/architecture.md): tiny models per architecture family, the fixture mirror in the hub's
schemas, the real-text world, data checks and token-length measurements. Reaches training only through the
public core API."""
