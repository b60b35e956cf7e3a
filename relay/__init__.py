"""The relay's domain: nothing in this package knows about Azure or HTTP."""
