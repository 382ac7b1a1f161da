"""ssdlite."""
