"""Server settings (typed, validated) and named tuning profiles."""
