"""Subjects (customers) across requests: their contact histories, the store's contact policy and the history
features Rank adds."""
