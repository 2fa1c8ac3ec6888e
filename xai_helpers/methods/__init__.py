"""The methods wing: attacks, Grad-CAM, Integrated Gradients, map comparison, interventions, sufficiency,
controls, faithfulness, detection, regions and plots. Imports only ``classifier``."""
