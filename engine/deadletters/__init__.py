"""The dead-letter wing: the copy a dying job publishes, the recorder that stores it
once, the next generation of a stored job, reanimation and retention."""
