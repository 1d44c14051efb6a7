"""Wire codecs, one module per backend dialect (the only place JSON shapes live)."""
