"""Vision-language input: image pre-processing and the chat layout for Pixtral."""

from .chat import encode_chat, normalize_messages
from .errors import EmptyImageError, ImageError, ImageTooLargeError, NotAnImageError
from .preprocess import (
    IMG,
    IMG_BREAK,
    IMG_END,
    ImageProcessor,
    ProcessedImage,
    image_token_layout,
    preprocess_image,
    resize_bicubic,
    to_rgb,
)

__all__ = [
    "IMG",
    "IMG_BREAK",
    "IMG_END",
    "EmptyImageError",
    "ImageError",
    "ImageProcessor",
    "ImageTooLargeError",
    "NotAnImageError",
    "ProcessedImage",
    "encode_chat",
    "image_token_layout",
    "normalize_messages",
    "preprocess_image",
    "resize_bicubic",
    "to_rgb",
]
