"""Consent: the contact's subscription status overall and per topic, its history and suppression."""
