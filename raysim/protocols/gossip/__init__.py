"""The gossip family: push, pull and push-pull dissemination, push-pull averaging."""

from raysim.protocols.gossip import averaging, dissemination, rumor

__all__ = ["averaging", "dissemination", "rumor"]
