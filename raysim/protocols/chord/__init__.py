"""The Chord family: lookups on the consistent-hash ring, stabilization, join and leave."""

from raysim.protocols.chord import protocol

__all__ = ["protocol"]
