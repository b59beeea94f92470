print("tlaunch")
