"""Kafka adapter."""
