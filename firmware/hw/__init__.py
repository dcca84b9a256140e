"""Hardware at the edge of the lock: GPIO (relay, LEDs, buzzer, switches via gpiozero pin factories),
cameras (picamera2, OpenCV, replay) and the simulated-switch socket used with gpiozero's MockFactory.
"""
