"""The renderer's parts: theme, text and image primitives, header and footer, and one
module per family of screens. :class:`device.ui.render.Renderer` puts them together.
"""
