print("train")  # the simulated cluster runs no container; KWOK plays the pod
