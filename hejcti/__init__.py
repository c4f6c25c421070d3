"""Hej CTI: sipgate call events to CRM screen-pops."""

__version__ = "0.1.0"
