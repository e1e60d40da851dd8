"""The packet path's stages below detection: decode (struct slicing), IP
reassembly, TCP connection state and stream reassembly, bounded tables."""
