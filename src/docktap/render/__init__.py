"""Renderers: pure functions that turn a loaded capture into text or data for people and tools."""
